"""`vgpustream gateway` in front of three real hosts on loopback: the cluster's list, calls routed to a
session's host, hosts that are down, hang or answer garbage, and viewers' signalling through it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.balancer import balancer
from tests.browser import chromium
from tests.conftest import OPERATOR_TOKEN, wait_for
from tests.conftest import test_settings as host_settings
from tests.gateway_cluster import (
    GATEWAY_TOKEN,
    NODES,
    SOURCE,
    Cluster,
    answer,
    create,
    misbehaving_host,
)
from tests.test_console import FRAMES_DECODED, decoded_more_than
from tests.test_lifecycle import settle, within
from tests.test_websocket import churn
from vgpustream.api.app import create_app
from vgpustream.api.state import REGISTRY
from vgpustream.errors import VgpuStreamError
from vgpustream.gateway.app import create_gateway
from vgpustream.gateway.settings import GatewaySettings
from vgpustream.testing.receiver import WhepReceiver
from vgpustream.testing.server import gateway as gateway_process
from vgpustream.testing.wsreceiver import WebSocketReceiver, WebSocketRefused

RECONNECTED_WITHIN = 3.0
"""How soon a WebSocket console whose gateway replica stopped shows pictures through another (issue #27)."""
WEBSOCKET_FRAMES = "() => window.vgpustream.socket ? window.vgpustream.socket.counts.decoded : 0"
"""The frames the console has decoded from its WebSocket transport."""


def session_ids(host: TestServer) -> list[str]:
    return [session.id for session in host.app[REGISTRY]]


async def test_the_list_has_every_host_s_sessions_each_with_its_node(cluster, control_plane):
    gateway = await cluster.gateway()
    created = await create(control_plane, gateway, "vm-7", "gpu-host-2")
    assert created["node"] == "gpu-host-2" and created["state"] in ("starting", "streaming")
    assert "vm-7" in session_ids(cluster.hosts["gpu-host-2"]), "made on the host the body names"
    async with control_plane.get(gateway.make_url("/api/v1/sessions")) as response:
        status, listing = await answer(response)
    assert status == 200
    assert sorted((s["node"], s["id"]) for s in listing["sessions"]) == [
        ("gpu-host-1", "default"),
        ("gpu-host-2", "default"),
        ("gpu-host-2", "vm-7"),
        ("gpu-host-3", "default"),
    ]
    assert listing["nodes"] == [{"name": name, "state": "up", "message": None} for name in NODES]
    async with control_plane.get(gateway.make_url("/api/v1/sessions?label=vm=vm-7")) as response:
        assert [s["id"] for s in (await response.json())["sessions"]] == ["vm-7"], "labels filter as on a host"
    async with control_plane.get(gateway.make_url("/api/v1/sessions?node=gpu-host-3")) as response:
        assert [(s["node"], s["id"]) for s in (await response.json())["sessions"]] == [("gpu-host-3", "default")]


async def test_calls_about_a_session_reach_its_host(cluster, control_plane):
    gateway = await cluster.gateway()
    await create(control_plane, gateway, "vm-7", "gpu-host-2")
    url = gateway.make_url("/api/v1/sessions/vm-7")
    async with control_plane.patch(url, json={"name": "Seven"}) as response:
        status, body = await answer(response)
    assert (status, body["name"], body["node"]) == (200, "Seven", "gpu-host-2")
    assert cluster.hosts["gpu-host-2"].app[REGISTRY].get("vm-7").spec.name == "Seven"
    async with control_plane.get(url) as response:
        assert (await response.json())["name"] == "Seven"
    async with control_plane.get(gateway.make_url("/api/v1/sessions/vm-7/planes")) as response:
        assert response.status == 200 and "primary" in await response.json()
    await wait_for(lambda: cluster.hosts["gpu-host-2"].app[REGISTRY].get("vm-7").capture.snapshot.thumbnail)
    async with control_plane.get(gateway.make_url("/api/v1/sessions/vm-7/thumbnail?size=64")) as response:
        assert response.status == 200 and response.content_type == "image/jpeg"
        assert (await response.read()).startswith(b"\xff\xd8"), "a JPEG, relayed as the host sent it"
        etag = response.headers["ETag"]
    async with control_plane.get(
        gateway.make_url("/api/v1/sessions/vm-7/thumbnail?size=64"), headers={"If-None-Match": etag}
    ) as response:
        assert response.status == 304, "conditional requests reach the host"
    async with control_plane.get(gateway.make_url("/api/v1/sessions/vm-7/recordings")) as response:
        assert response.status == 200 and (await response.json())["recordings"] == []
    async with control_plane.post(gateway.make_url("/api/v1/sessions/vm-7/tokens"), json={"role": "view"}) as response:
        status, issued = await answer(response)
    assert status == 201
    base = str(gateway.make_url("")).rstrip("/")
    assert issued["console_url"] == f"{base}/?session=vm-7&node=gpu-host-2#token={issued['token']}"
    assert issued["whep_url"] == f"{base}/whep/vm-7?node=gpu-host-2"
    assert issued["websocket_url"] == f"{base.replace('http', 'ws', 1)}/ws/vm-7?node=gpu-host-2"
    async with control_plane.get(gateway.make_url("/api/v1/sessions/vm-7/tokens")) as response:
        assert [t["id"] for t in (await response.json())["tokens"]] == [issued["id"]], "the host's own list"
    async with control_plane.get(gateway.make_url("/api/v1/events?session=vm-7")) as response:
        assert [e["type"] for e in (await response.json())["events"]] == ["token.created"], "the host's trail"
    async with control_plane.delete(url) as response:
        assert response.status == 204
    assert "vm-7" not in session_ids(cluster.hosts["gpu-host-2"])
    async with control_plane.get(url) as response:
        status, body = await answer(response)
    assert (status, body["error"]["message"]) == (404, "no node has session 'vm-7'")


async def test_a_session_id_on_more_than_one_host_needs_its_node(cluster, control_plane):
    gateway = await cluster.gateway()
    async with control_plane.get(gateway.make_url("/api/v1/sessions")) as response:
        assert response.status == 200, "the lists seen, which a search asks first, say it is on every host"
    async with control_plane.get(gateway.make_url("/api/v1/sessions/default")) as response:
        status, body = await answer(response)
    assert status == 409
    assert body["error"]["message"] == (
        "session 'default' is on more than one node (gpu-host-1, gpu-host-2, gpu-host-3): name it with ?node="
    )
    async with control_plane.get(gateway.make_url("/api/v1/sessions/default?node=gpu-host-3")) as response:
        status, body = await answer(response)
    assert (status, body["node"]) == (200, "gpu-host-3")


async def test_bad_requests_get_a_clear_4xx(cluster, control_plane, anonymous, http):
    gateway = await cluster.gateway()
    cases = {
        "an unknown node in the body": (
            "POST", "/api/v1/sessions", {"id": "vm-1", "source": SOURCE, "node": "gpu-host-9"},
            404, "no node named 'gpu-host-9' in the cluster (nodes: gpu-host-1, gpu-host-2, gpu-host-3)",
        ),
        "no node in the body": (
            "POST", "/api/v1/sessions", {"id": "vm-1", "source": SOURCE}, 400, "Object missing required field `node`",
        ),
        "an unknown node in the query": (
            "GET", "/api/v1/sessions?node=nope", None,
            404, "no node named 'nope' in the cluster (nodes: gpu-host-1, gpu-host-2, gpu-host-3)",
        ),
        "an unknown session": ("GET", "/api/v1/sessions/vm-404", None, 404, "no node has session 'vm-404'"),
        "a label filter that is none": (  # not every host's 400, and every host unreachable
            "GET", "/api/v1/sessions?label=", None, 400, "label filters look like ?label=key=value",
        ),
        "the host's error, relayed": (
            "GET", "/api/v1/sessions/default/thumbnail?size=1&node=gpu-host-1", None,
            400, "size must be a whole number of pixels within 16..640",
        ),
        "events of no host": (
            "GET", "/api/v1/events", None,
            400, "the audit trail is each host's own: name a node (?node=) or a session (?session=)",
        ),
    }  # fmt: skip
    for what, (method, path, body, status, message) in cases.items():
        async with control_plane.request(method, gateway.make_url(path), json=body) as response:
            assert await answer(response) == (status, {"error": {"code": response_code(status), "message": message}}), (
                what
            )
    async with anonymous.get(gateway.make_url("/api/v1/sessions")) as response:
        assert response.status == 401 and response.headers["WWW-Authenticate"] == "Bearer"
    async with http.get(gateway.make_url("/api/v1/sessions")) as response:
        assert response.status == 403, "a host's operator token is no gateway's"


def response_code(status: int) -> str:
    return {400: "bad_request", 404: "not_found"}[status]


async def test_a_host_that_is_down_lists_its_sessions_unreachable_and_calls_for_it_get_503(cluster, control_plane):
    gateway = await cluster.gateway()
    await create(control_plane, gateway, "vm-3", "gpu-host-3")
    async with control_plane.get(gateway.make_url("/api/v1/sessions")) as response:
        assert response.status == 200
    await cluster.hosts["gpu-host-3"].close()
    async with control_plane.get(gateway.make_url("/api/v1/sessions")) as response:
        status, listing = await answer(response)
    assert status == 200
    states = {(s["node"], s["id"]): s["state"] for s in listing["sessions"]}
    assert states[("gpu-host-3", "vm-3")] == states[("gpu-host-3", "default")] == "unreachable"
    assert states[("gpu-host-1", "default")] != "unreachable"
    (down,) = [n for n in listing["nodes"] if n["name"] == "gpu-host-3"]
    assert down == {"name": "gpu-host-3", "state": "unreachable", "message": "node gpu-host-3 does not answer"}
    for method, path, body in (
        ("GET", "/api/v1/sessions/vm-3?node=gpu-host-3", None),
        ("DELETE", "/api/v1/sessions/vm-3?node=gpu-host-3", None),
        ("POST", "/api/v1/sessions", {"id": "vm-4", "source": SOURCE, "node": "gpu-host-3"}),
    ):
        async with control_plane.request(method, gateway.make_url(path), json=body) as response:
            status, refused = await answer(response)
            assert (status, response.headers["Retry-After"]) == (503, "5"), (method, path)
            assert refused["error"]["message"] == "node gpu-host-3 does not answer"
    async with control_plane.get(gateway.make_url("/api/v1/sessions/vm-3")) as response:
        status, body = await answer(response)
    assert (status, response.headers["Retry-After"]) == (503, "5"), "it may be on the host that does not answer"
    assert body["error"]["message"] == "no node that answers has session 'vm-3'; gpu-host-3 do not answer"


async def test_a_session_made_through_the_gateway_is_listed_unreachable_before_the_next_look_at_its_host(
    cluster, control_plane
):
    gateway = await cluster.gateway()  # has listed every host once, and looks again in 10 s
    async with control_plane.get(gateway.make_url("/api/v1/sessions")) as response:
        assert response.status == 200
    await create(control_plane, gateway, "vm-3", "gpu-host-3")
    await create(control_plane, gateway, "vm-9", "gpu-host-3")
    async with control_plane.delete(gateway.make_url("/api/v1/sessions/vm-9")) as response:
        assert response.status == 204
    await cluster.hosts["gpu-host-3"].close()
    async with control_plane.get(gateway.make_url("/api/v1/sessions")) as response:
        listing = await response.json()
    assert {s["id"]: s["state"] for s in listing["sessions"] if s["node"] == "gpu-host-3"} == {
        "default": "unreachable",
        "vm-3": "unreachable",
    }, "the gateway made vm-3 and deleted vm-9: it knows what is there"


async def test_a_host_that_comes_back_has_its_sessions_listed_as_they_are_again(
    cluster, control_plane, aiohttp_server, tmp_path
):
    gateway = await cluster.gateway()
    await create(control_plane, gateway, "vm-3", "gpu-host-3")

    async def states() -> tuple[dict, dict]:
        async with control_plane.get(gateway.make_url("/api/v1/sessions")) as response:
            status, listing = await answer(response)
        assert status == 200
        return (
            {s["id"]: s["state"] for s in listing["sessions"] if s["node"] == "gpu-host-3"},
            {n["name"]: n["state"] for n in listing["nodes"]},
        )

    assert set((await states())[0]) == {"default", "vm-3"}  # listed, so the gateway has seen it
    down = cluster.hosts["gpu-host-3"]
    port = down.port
    await down.close()
    assert await states() == (
        {"default": "unreachable", "vm-3": "unreachable"},
        {"gpu-host-1": "up", "gpu-host-2": "up", "gpu-host-3": "unreachable"},
    )
    back = host_settings(tmp_path / "gpu-host-3", source=SOURCE)  # its state, as it left it
    cluster.hosts["gpu-host-3"] = await aiohttp_server(create_app(back), port=port)
    sessions, nodes = await states()
    assert set(sessions) == {"default", "vm-3"} and "unreachable" not in sessions.values(), sessions
    assert set(nodes.values()) == {"up"}
    async with control_plane.get(gateway.make_url("/api/v1/sessions/vm-3")) as response:
        assert (response.status, (await response.json())["node"]) == (200, "gpu-host-3")


@pytest.mark.timeout(60)
async def test_hosts_that_hang_or_answer_garbage_get_502_or_503_in_bounded_time(cluster, control_plane):
    hanging, hanging_url = await misbehaving_host(None)
    garbage, garbage_url = await misbehaving_host(b"SPAM SPAM SPAM\r\n\r\n")
    not_json, not_json_url = await misbehaving_host(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\n{oops"
    )
    failing, failing_url = await misbehaving_host(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n")
    nodes = cluster.nodes(
        hanging=hanging_url, garbage=garbage_url, **{"not-json": not_json_url, "failing": failing_url}
    )
    gateway = await cluster.gateway(node=nodes, host_timeout=0.5, request_timeout=1.0)
    async with control_plane.get(gateway.make_url("/api/v1/sessions")) as response:
        status, listing = await answer(response)
    assert status == 200
    assert {n["name"]: n["message"] for n in listing["nodes"] if n["state"] == "unreachable"} == {
        "hanging": "node hanging does not answer",
        "garbage": "node garbage gave no valid answer",
        "not-json": "node not-json gave no valid answer",
        "failing": "node failing answered 500 to a call of the gateway's",
    }
    assert len(listing["sessions"]) == 3, "the hosts that answer are listed"
    expected = {
        "hanging": (503, "node hanging does not answer"),
        "garbage": (502, "node garbage gave no valid answer"),
        "not-json": (502, "node not-json gave no valid answer"),
        "failing": (502, "node failing failed (500)"),
    }
    for node, (status, message) in expected.items():
        paths = [f"/api/v1/sessions/default?node={node}"]  # an answer the gateway reads (and adds the node to)
        if node != "not-json":  # one it relays as it comes: a body that is not JSON is the host's business
            paths.append(f"/api/v1/sessions/default/planes?node={node}")
        for path in paths:
            async with control_plane.get(gateway.make_url(path)) as response:
                assert (response.status, (await response.json())["error"]["message"]) == (status, message), path
    for node, status in (("hanging", 503), ("garbage", 502)):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await control_plane.ws_connect(gateway.make_url(f"/ws/default?node={node}"))
        assert refused.value.status == status, f"a WebSocket for {node}"
    for server in (hanging, garbage, not_json, failing):
        server.close()


async def test_whep_through_the_gateway_plays_from_the_session_s_host(cluster, control_plane, anonymous):
    gateway = await cluster.gateway()
    await create(control_plane, gateway, "vm-7", "gpu-host-2")
    async with control_plane.post(gateway.make_url("/api/v1/sessions/vm-7/tokens"), json={"role": "control"}) as r:
        issued = await r.json()
    async with anonymous.options(issued["whep_url"], headers={"Authorization": f"Bearer {issued['token']}"}) as r:
        assert r.status == 204 and r.headers["Accept-Post"] == "application/sdp"
    viewer = WhepReceiver(issued["whep_url"], anonymous, token=issued["token"])
    try:
        await viewer.connect()
        assert viewer.location.startswith(f"{gateway.make_url('/whep/vm-7/')}") and viewer.location.endswith(
            "?node=gpu-host-2"
        ), "PATCH and DELETE go through the gateway, to the same host"
        await viewer.next_frame()
        (seat,) = cluster.hosts["gpu-host-2"].app[REGISTRY].get("vm-7").audience
        assert seat.token_id == issued["id"], "the viewer's own token reached the host"
        async with anonymous.patch(
            viewer.location,
            data="a=end-of-candidates\r\n",
            headers={"Content-Type": "application/trickle-ice-sdpfrag", "Authorization": f"Bearer {issued['token']}"},
        ) as r:
            assert r.status == 204
    finally:
        await viewer.close()
    host_audience = cluster.hosts["gpu-host-2"].app[REGISTRY].get("vm-7").audience
    await wait_for(lambda: len(host_audience) == 0, what="the DELETE through the gateway to give the seat back")
    async with anonymous.post(
        issued["whep_url"], data="v=0\r\n", headers={"Content-Type": "application/sdp", "Authorization": "Bearer nope"}
    ) as r:
        assert (r.status, (await r.json())["error"]["message"]) == (403, "unknown token"), "the host's verdict"


async def test_the_websocket_transport_through_the_gateway(cluster, control_plane, anonymous):
    gateway = await cluster.gateway()
    await create(control_plane, gateway, "vm-7", "gpu-host-2")
    async with control_plane.post(gateway.make_url("/api/v1/sessions/vm-7/tokens"), json={"role": "view"}) as r:
        issued = await r.json()
    viewer = WebSocketReceiver(issued["websocket_url"], anonymous, issued["token"])
    await viewer.connect()
    frames = [await viewer.next_frame() for _ in range(5)]
    assert viewer.keyframes >= 1 and all(f.picture.width == 320 for f in frames)
    async with control_plane.delete(gateway.make_url(f"/api/v1/sessions/vm-7/tokens/{issued['id']}")) as r:
        assert r.status == 204
    code, _ = await asyncio.wait_for(viewer.closed, 15)
    assert code == 4403, "the host's close code reaches the browser"
    refused = WebSocketReceiver(issued["websocket_url"], anonymous, issued["token"])
    with pytest.raises(WebSocketRefused) as closed:
        await refused.connect()
    assert (closed.value.code, closed.value.reason) == (4403, "the token was revoked")
    host_audience = cluster.hosts["gpu-host-2"].app[REGISTRY].get("vm-7").audience
    await wait_for(lambda: len(host_audience) == 0, what="every seat given back")
    operator = WebSocketReceiver(issued["websocket_url"], anonymous, GATEWAY_TOKEN)
    await operator.connect()  # the gateway's operator token becomes the host's in the auth message
    assert [seat.role for seat in host_audience] == ["operator"]
    await operator.close()


def test_gateway_settings_refuse_bad_nodes_and_missing_tokens():
    tokens = {"operator_token": GATEWAY_TOKEN, "host_token": OPERATOR_TOKEN}
    cases = {
        ("gpu-host-1",): "--node 'gpu-host-1' must be NAME=URL with a node name such as gpu-host-7",
        ("Bad_Name=http://h:1",): "--node 'Bad_Name=http://h:1' must be NAME=URL with a node name such as gpu-host-7",
        ("h=ftp://h",): "--node h: 'ftp://h' must be a base URL such as http://10.0.3.7:8080",
        ("h=http://h:1/path",): "--node h: 'http://h:1/path' must be a base URL such as http://10.0.3.7:8080",
        ("h=http://a:1", "h=http://b:1"): "--node h is given twice",
    }
    for nodes, message in cases.items():
        with pytest.raises(VgpuStreamError) as refused:
            GatewaySettings(node=nodes, **tokens)
        assert refused.value.message == message
    with pytest.raises(VgpuStreamError, match="VGPUSTREAM_OPERATOR_TOKEN or --operator-token-file"):
        GatewaySettings(host_token=OPERATOR_TOKEN)
    with pytest.raises(VgpuStreamError, match="VGPUSTREAM_HOST_TOKEN or --host-token-file"):
        GatewaySettings(operator_token=GATEWAY_TOKEN)


async def test_hosts_tokens_come_from_a_file_by_node(cluster, control_plane, aiohttp_server, tmp_path):
    tokens = tmp_path / "host-tokens"
    tokens.write_text(f"# the hosts' operator tokens\ngpu-host-1 {OPERATOR_TOKEN}\n* wrong-token\n")
    settings = GatewaySettings(operator_token=GATEWAY_TOKEN, host_token_file=tokens, node=cluster.nodes())
    gateway = await aiohttp_server(create_gateway(settings))
    async with control_plane.get(gateway.make_url("/api/v1/sessions/default?node=gpu-host-1")) as response:
        assert response.status == 200
    async with control_plane.get(gateway.make_url("/api/v1/sessions/default?node=gpu-host-2")) as response:
        assert response.status == 403, "the host's own verdict on the token the file gives it"
    tokens.write_text(f"{OPERATOR_TOKEN}\n")  # the hosts' own token file: a token for every host
    gateway = await aiohttp_server(create_gateway(settings))
    async with control_plane.get(gateway.make_url("/api/v1/sessions/default?node=gpu-host-2")) as response:
        assert response.status == 200
    tokens.write_text("gpu-host-1 a token with spaces\n")
    with pytest.raises(VgpuStreamError, match="must be `NAME TOKEN`, `\\* TOKEN` or `TOKEN`"):
        create_gateway(settings)


@pytest.mark.browser
async def test_consoles_through_two_gateways_play_and_a_dead_host_or_gateway_leaves_other_viewers_be(
    cluster, control_plane
):
    first = await cluster.gateway(refresh_interval=0.2)
    await create(control_plane, first, "vm-7", "gpu-host-2")
    await create(control_plane, first, "vm-3", "gpu-host-3")
    second = await cluster.gateway(refresh_interval=0.2)  # a replica that has never been asked for the list
    links = {}
    for gateway, session, node, transport in (
        (second, "vm-7", "gpu-host-2", "auto"),  # made through one gateway, its link through the other
        (first, "default", "gpu-host-1", "websocket"),  # an id every host has: the link names the node
    ):
        body = {"role": "control", "transport": transport}
        path = f"/api/v1/sessions/{session}/tokens?node={node}"
        async with control_plane.post(gateway.make_url(path), json=body) as response:
            assert response.status == 201, await response.text()
            links[session] = (await response.json())["console_url"]
    async with chromium() as browser:
        pages = {}
        for session, url in links.items():
            page = pages[session] = await browser.new_page()
            await page.goto(url)
        await decoded_more_than(pages["vm-7"], 10)
        await pages["default"].wait_for_function("() => window.vgpustream.state === 'playing'", timeout=20_000)
        assert await pages["vm-7"].evaluate("window.vgpustream.transport") == "webrtc"
        assert await pages["default"].evaluate("window.vgpustream.transport") == "websocket"
        (webrtc,) = cluster.hosts["gpu-host-2"].app[REGISTRY].get("vm-7").audience
        (websocket,) = cluster.hosts["gpu-host-1"].app[REGISTRY].get("default").audience
        assert (webrtc.transport, websocket.transport) == ("webrtc", "websocket"), "each on its own host"

        await cluster.hosts["gpu-host-3"].close()
        for gateway in (first, second):
            async with control_plane.get(gateway.make_url("/api/v1/sessions")) as response:
                states = {(s["node"], s["id"]): s["state"] for s in (await response.json())["sessions"]}
            assert states[("gpu-host-2", "vm-7")] == "streaming" and states[("gpu-host-1", "default")] == "streaming"
            assert states[("gpu-host-3", "vm-3")] == "unreachable", "each replica remembers what its host had"
        decoded = await pages["vm-7"].evaluate(FRAMES_DECODED)
        drawn = await pages["default"].evaluate(WEBSOCKET_FRAMES)
        await decoded_more_than(pages["vm-7"], decoded + 30)
        await pages["default"].wait_for_function(f"() => ({WEBSOCKET_FRAMES})() > {drawn + 30}", timeout=20_000)
        for page in pages.values():
            assert await page.evaluate("window.vgpustream.state") == "playing", "the other hosts' viewers play on"

        await second.close()  # the replica the WebRTC console signalled through: its media never went there
        decoded = await pages["vm-7"].evaluate(FRAMES_DECODED)
        await decoded_more_than(pages["vm-7"], decoded + 30)
        assert await pages["vm-7"].evaluate("window.vgpustream.state") == "playing"


async def test_the_gateway_command_serves_the_cluster_with_tokens_from_its_environment(
    cluster, control_plane, tmp_path
):
    nodes = ",".join(cluster.nodes())
    environment = {"VGPUSTREAM_OPERATOR_TOKEN": GATEWAY_TOKEN, "VGPUSTREAM_HOST_TOKEN": OPERATOR_TOKEN}
    with gateway_process(tmp_path, env={**environment, "VGPUSTREAM_NODE": nodes}) as gateway:
        async with control_plane.get(f"{gateway.url}/api/v1/sessions") as response:
            status, listing = await answer(response)
        assert status == 200 and [n["state"] for n in listing["nodes"]] == ["up"] * 3
        async with control_plane.get(f"{gateway.url}/readyz") as response:
            assert (response.status, await response.json()) == (200, {"status": "ready"})
        output = gateway.output()
    assert "GET /api/v1/sessions 200" in output, "the access log"
    assert GATEWAY_TOKEN not in output and OPERATOR_TOKEN not in output, "no token in a log line"
    refused = subprocess.run(
        [sys.executable, "-m", "vgpustream", "gateway", "--node", "gpu-host-1"],
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 2
    assert refused.stderr == ("vgpustream: --node 'gpu-host-1' must be NAME=URL with a node name such as gpu-host-7\n")


async def test_viewers_through_the_gateway_are_counted_by_their_own_address(
    aiohttp_server, tmp_path, control_plane, anonymous
):
    limits = {"source": SOURCE, "rate_limit": 0.01, "rate_burst": 2}
    trusting = await aiohttp_server(create_app(host_settings(tmp_path / "a", trusted_proxy=("127.0.0.1",), **limits)))
    wary = await aiohttp_server(create_app(host_settings(tmp_path / "b", **limits)))
    nodes = (f"trusting={trusting.make_url('')}", f"wary={wary.make_url('')}")
    # the gateway trusts its own proxy in front (an Ingress), which names the clients
    gateway = await Cluster({}, aiohttp_server).gateway(node=nodes, trusted_proxy=("127.0.0.0/8",))

    async def offer(node: str, client: str) -> int:
        headers = {"Content-Type": "application/sdp", "Authorization": "Bearer vgs_nope", "X-Forwarded-For": client}
        async with anonymous.post(gateway.make_url(f"/whep/default?node={node}"), data="v=0", headers=headers) as r:
            return r.status

    clients = ("198.51.100.1", "198.51.100.1", "198.51.100.1", "198.51.100.2")
    assert [await offer("trusting", client) for client in clients] == [403, 403, 429, 403], "a budget per client"
    assert [await offer("wary", client) for client in clients] == [403, 403, 429, 429], "the gateway's budget"
    async with control_plane.post(
        gateway.make_url("/api/v1/sessions/default/tokens?node=trusting"), json={"role": "view"}
    ) as response:
        issued = await response.json()
    async with aiohttp.ClientSession(headers={"X-Forwarded-For": "198.51.100.7"}) as browser:
        viewer = WebSocketReceiver(issued["websocket_url"], browser, issued["token"])
        await viewer.connect()
        await viewer.close()
    async with control_plane.get(gateway.make_url("/api/v1/events?node=trusting")) as response:
        (joined,) = [e for e in (await response.json())["events"] if e["type"] == "viewer.joined"]
    assert joined["remote"] == "198.51.100.7", "the audit trail names the viewer, not the gateway"
    with pytest.raises(VgpuStreamError, match="a trusted proxy must be an IP address or network"):
        GatewaySettings(node=nodes, operator_token="t", host_token="t", trusted_proxy=("gateway.example",))


async def test_searches_for_a_session_s_host_are_rate_limited_per_client(cluster, anonymous):
    gateway = await cluster.gateway(rate_limit=0.01, rate_burst=2)
    headers = {"Content-Type": "application/sdp", "Authorization": "Bearer vgs_nope"}

    async def offer(path: str) -> tuple[int, str | None]:
        async with anonymous.post(gateway.make_url(path), data="v=0", headers=headers) as response:
            return response.status, response.headers.get("Retry-After")

    searches = [await offer("/whep/vm-unknown") for _ in range(3)]
    assert [status for status, _ in searches] == [404, 404, 429], "every host asked, twice; then refused"
    assert int(searches[2][1]) > 0
    assert [(await offer("/whep/default?node=gpu-host-1"))[0] for _ in range(3)] == [403] * 3, "no search, no limit"


async def test_websockets_through_the_gateway_leave_nothing_behind(cluster, control_plane, anonymous):
    gateway = await cluster.gateway()
    await create(control_plane, gateway, "vm-7", "gpu-host-2")
    async with control_plane.post(gateway.make_url("/api/v1/sessions/vm-7/tokens"), json={"max_viewers": 8}) as r:
        issued = await r.json()
    url = issued["websocket_url"]
    await (await connected(WebSocketReceiver(url, anonymous, issued["token"]))).close()  # warm-up: pools
    baseline = await settle((0, 0), seconds=2.0)
    await churn(url, anonymous, issued["token"], 60)
    host_audience = cluster.hosts["gpu-host-2"].app[REGISTRY].get("vm-7").audience
    await wait_for(lambda: len(host_audience) == 0, what="every seat on the host given back")
    after = await settle(baseline)
    assert within(after, baseline), f"(fds, tasks) were {baseline}, now {after} (the gateway and hosts together)"


async def connected(receiver: WebSocketReceiver) -> WebSocketReceiver:
    await receiver.connect()
    return receiver


@pytest.mark.browser
async def test_websocket_consoles_come_back_through_the_other_replica_when_theirs_stops(cluster, control_plane):
    first, second = await cluster.gateway(), await cluster.gateway()
    async with balancer([(first.host, first.port), (second.host, second.port)]) as port:
        service = f"http://127.0.0.1:{port}"  # the replicas' Service
        body = {"role": "view", "transport": "websocket"}
        async with control_plane.post(f"{service}/api/v1/sessions/default/tokens?node=gpu-host-1", json=body) as r:
            issued = await r.json()
        async with chromium() as browser:
            page = await browser.new_page()
            await page.goto(issued["console_url"])
            await page.wait_for_function(f"() => ({WEBSOCKET_FRAMES})() > 10", timeout=20_000)
            first_client = await page.evaluate_handle("window.vgpustream.socket")
            stopping = time.monotonic()
            await first.close()  # its browsers are told it is going away (1001)
            await page.wait_for_function(
                f"client => window.vgpustream.socket !== client && ({WEBSOCKET_FRAMES})() > 0",
                arg=first_client,
                timeout=20_000,
            )
            back = time.monotonic() - stopping
            assert back < RECONNECTED_WITHIN, f"pictures again {back:.2f} s after the replica began to stop"
            print(f"a WebSocket console's pictures came back {back:.2f} s after its replica began to stop")
            await page.wait_for_function(f"() => ({WEBSOCKET_FRAMES})() > 10", timeout=20_000)
            assert await page.evaluate("window.vgpustream.state") == "playing"
            audience = cluster.hosts["gpu-host-1"].app[REGISTRY].get("default").audience
            await wait_for(lambda: len(audience) == 1, what="the first replica's viewer given back")
            (seat,) = audience
            assert seat.transport == "websocket", "the console's one viewer, through the other replica"


async def test_a_quality_asked_through_the_gateway_reaches_the_host(cluster, control_plane, anonymous):
    gateway = await cluster.gateway()
    await create(control_plane, gateway, "vm-7", "gpu-host-2")
    async with control_plane.post(gateway.make_url("/api/v1/sessions/vm-7/tokens"), json={"role": "view"}) as r:
        issued = await r.json()
    webrtc = WhepReceiver(issued["whep_url"] + "&quality=2", anonymous, token=issued["token"])
    socket = WebSocketReceiver(issued["websocket_url"] + "&quality=1", anonymous, issued["token"])
    await webrtc.connect()
    await socket.connect()
    try:
        await webrtc.next_frame()
        await socket.next_frame()
        host_audience = cluster.hosts["gpu-host-2"].app[REGISTRY].get("vm-7").audience
        assert sorted((seat.transport, seat.rendition.name) for seat in host_audience) == [
            ("webrtc", "h264/2"),
            ("websocket", "h264/1"),
        ]
    finally:
        await webrtc.close()
        await socket.close()
    async with anonymous.get(issued["websocket_url"] + "&quality=9") as r:
        assert r.status == 400, "refused at the gateway, before the upgrade"
