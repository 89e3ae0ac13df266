"""What the gateway reads of its hosts' answers: links that name the node (recordings, signed file links, the
`next` page of tokens and events), a recording found where its session is gone, and a host that answers 200
with a body that breaks off or is not what a host sends (502, never passed on)."""

from __future__ import annotations

import asyncio
import io
import json
import re

import av
import pytest
from aiohttp.test_utils import TestServer
from aiortc import RTCPeerConnection

from tests.conftest import OPERATOR_TOKEN, wait_for
from tests.gateway_cluster import GATEWAY_TOKEN, SOURCE, answer, create, misbehaving_host
from vgpustream.api.state import REGISTRY


def named(link: str, node: str) -> bool:
    return link.startswith("/api/v1/sessions/") and link.endswith(f"node={node}")


async def recording_with_bytes(control_plane, url, recording: dict) -> dict:
    """The recording (through the gateway) once its file holds something."""
    for _ in range(100):
        async with control_plane.get(url(recording["href"])) as response:
            now = await response.json()
        if now["bytes"] > 0:
            return now
        await asyncio.sleep(0.1)
    raise AssertionError(f"the recording stayed empty: {now}")


async def test_recording_links_name_their_node_and_a_signed_file_link_needs_no_token(cluster, control_plane, anonymous):
    gateway = await cluster.gateway()
    url = gateway.make_url
    path = "/api/v1/sessions/default/recordings"
    async with control_plane.post(url(f"{path}?node=gpu-host-2"), json={"label": "audit"}) as response:
        status, started = await answer(response)
    assert status == 201 and response.headers["Location"] == f"{started['href']}"
    assert all(named(started[link], "gpu-host-2") for link in ("href", "file", "file_link")), started
    recording = await recording_with_bytes(control_plane, url, started)  # its href reaches gpu-host-2 alone
    assert recording["id"] == started["id"]
    async with control_plane.get(url(path)) as response:
        assert response.status == 409, "'default' is on every host: name it"
    async with control_plane.get(url(f"{path}?node=gpu-host-2")) as response:
        (listed,) = (await response.json())["recordings"]
    assert named(listed["file_link"], "gpu-host-2")

    async with anonymous.get(url(recording["file_link"])) as response:  # a browser's <video>: no token
        assert (response.status, response.content_type) == (200, "video/mp4")
        assert (await response.read())[4:8] == b"ftyp"
    async with anonymous.get(url(recording["file_link"]), headers={"Range": "bytes=0-9"}) as response:
        assert response.status == 206 and len(await response.read()) == 10, "seeking works through the gateway"
    forged = re.sub("signature=[0-9a-f]+", f"signature={'0' * 64}", recording["file_link"])
    async with anonymous.get(url(forged)) as response:
        status, refused = await answer(response)
    assert (status, refused["error"]["message"]) == (
        403,
        "the link's signature is not valid (the server may have restarted): get a new one",
    ), "the host judges the link: the gateway lends it no token"
    without_node = recording["file_link"][: recording["file_link"].index("&node")]
    async with anonymous.get(url(without_node)) as response:
        status, refused = await answer(response)
    assert (status, refused["error"]["message"]) == (
        403,
        "a signed file link through the gateway names its node (?node=): take the recording's file_link from "
        "the gateway",
    )
    for unsigned in (recording["file"], f"{path}?node=gpu-host-2&signature={'0' * 64}&expires=9999999999"):
        async with anonymous.get(url(unsigned)) as response:
            assert response.status == 401, f"{unsigned}: only a file link is its own credential"
    async with control_plane.get(url(recording["file"])) as response:
        assert response.status == 200 and (await response.read())[4:8] == b"ftyp", "the operator's download"
    async with control_plane.delete(url(recording["href"])) as response:
        status, stopped = await answer(response)
    assert status == 200 and stopped["state"] == "stopped" and named(stopped["href"], "gpu-host-2")


async def test_recordings_outlive_their_session_and_an_id_on_two_hosts_needs_its_node(cluster, control_plane):
    gateway = await cluster.gateway()
    url = gateway.make_url
    await create(control_plane, gateway, "vm-1", "gpu-host-1")
    async with control_plane.post(url("/api/v1/sessions/vm-1/recordings"), json={}) as response:
        recording = await response.json()
    async with control_plane.delete(url(recording["href"])) as response:
        assert response.status == 200
    async with control_plane.delete(url("/api/v1/sessions/vm-1")) as response:
        assert response.status == 204
    async with control_plane.get(url("/api/v1/sessions/vm-1/recordings")) as response:
        status, listing = await answer(response)
    assert status == 200, "the recordings of a deleted session are found on the host that keeps them"
    assert [(r["id"], named(r["href"], "gpu-host-1")) for r in listing["recordings"]] == [(recording["id"], True)]

    await create(control_plane, gateway, "vm-1", "gpu-host-2")  # the same id again, on another host
    async with control_plane.get(url("/api/v1/sessions/vm-1/recordings")) as response:
        status, refused = await answer(response)
    assert (status, refused["error"]["message"]) == (
        409,
        "session 'vm-1' is on more than one node (gpu-host-1, gpu-host-2): name it with ?node=",
    ), "never one host's recordings for both"
    for node, expected in (("gpu-host-1", [recording["id"]]), ("gpu-host-2", [])):
        async with control_plane.get(url(f"/api/v1/sessions/vm-1/recordings?node={node}")) as response:
            assert [r["id"] for r in (await response.json())["recordings"]] == expected, node
    async with control_plane.get(url("/api/v1/sessions/vm-1")) as response:
        assert (await response.json())["node"] == "gpu-host-2", "the session itself runs on one host"


async def test_next_pages_of_tokens_and_events_stay_on_their_node(cluster, control_plane):
    gateway = await cluster.gateway()
    url = gateway.make_url
    issued = []
    for _ in range(3):
        async with control_plane.post(url("/api/v1/sessions/default/tokens?node=gpu-host-1"), json={}) as response:
            issued.append((await response.json())["id"])
    pages: dict[str, list[str]] = {"tokens": [], "events": []}
    for kind, first, items in (
        ("tokens", "/api/v1/sessions/default/tokens?node=gpu-host-1&limit=2", "tokens"),
        ("events", "/api/v1/events?node=gpu-host-1&limit=2", "events"),
    ):
        link: str | None = first
        while link is not None:
            async with control_plane.get(url(link)) as response:
                status, page = await answer(response)
            assert status == 200, (link, page)
            pages[kind] += [str(item["id"]) for item in page[items]]
            if kind == "events":
                assert all("expires_at" in event for event in page[items]), "an event's own fields, as its host wrote"
            link = page["next"]
            assert link is None or link.endswith("node=gpu-host-1") or "node=gpu-host-1&" in link, link
    assert pages["tokens"] == issued
    assert len(pages["events"]) == 3, "every token.created of gpu-host-1, and only those"
    async with control_plane.get(url("/api/v1/events?session=vm-9&limit=1")) as response:
        assert response.status == 404


@pytest.mark.timeout(60)
async def test_a_host_that_answers_200_with_a_broken_body_is_502(cluster, control_plane):
    replies = {
        "cut-short": b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"id": ',
        "broken-chunk": (
            b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{"id"'
        ),
        "closed-early": b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"sessions": [',
        "wrong-shape": (
            b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{"recordings": 5}'
        ),
    }
    servers, nodes = [], {}
    for name, reply in replies.items():
        server, nodes[name] = await misbehaving_host(reply)
        servers.append(server)
    gateway = await cluster.gateway(node=cluster.nodes(**nodes), host_timeout=0.5, request_timeout=1.0)
    calls = [
        ("GET", "/api/v1/sessions/default", None),
        ("PATCH", "/api/v1/sessions/default", {"name": "x"}),
        ("POST", "/api/v1/sessions", {"id": "vm-1", "source": SOURCE}),
        ("GET", "/api/v1/sessions/default/tokens", None),
        ("POST", "/api/v1/sessions/default/tokens", {"role": "view"}),  # a token its host mints
        ("GET", "/api/v1/events", None),
        ("GET", "/api/v1/sessions/default/recordings", None),
        ("POST", "/api/v1/sessions/default/recordings", {}),
        ("GET", "/api/v1/sessions/default/recordings/rec-1", None),
    ]
    for node in replies:
        for method, path, body in calls:
            named_node = {"node": node} if path == "/api/v1/sessions" else {}
            query = "" if named_node else f"?node={node}"
            sent = None if body is None else {**body, **named_node}
            async with control_plane.request(method, gateway.make_url(path + query), json=sent) as response:
                status, refused = await answer(response)
            assert (status, refused) == (
                502,
                {"error": {"code": "bad_gateway", "message": f"node {node} gave no valid answer"}},
            ), (node, method, path)
    async with control_plane.get(gateway.make_url("/api/v1/sessions")) as response:
        status, listing = await answer(response)
    assert status == 200 and {n["name"] for n in listing["nodes"] if n["state"] == "unreachable"} == set(replies)
    for server in servers:
        server.close()


async def test_a_host_s_answer_that_comes_in_pieces_is_read_whole(cluster, control_plane, http):
    """A large answer (a list of many sessions) reaches the gateway in more than one piece: all of it is read,
    by the calls it relays (a session) and by its own (the cluster's list)."""
    servers, nodes = [], {}
    for name, path in (("slow-session", "/api/v1/sessions/default"), ("slow-list", "/api/v1/sessions")):
        async with http.get(cluster.hosts["gpu-host-1"].make_url(path)) as response:
            answered = await response.read()
        body = answered[:1] + b" " * 300_000 + answered[1:]  # JSON still, and larger than one read of a socket
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        server, nodes[name] = await misbehaving_host([head + body[:1000], body[1000:]])
        servers.append(server)
    gateway = await cluster.gateway(node=cluster.nodes(**nodes))
    async with control_plane.get(gateway.make_url("/api/v1/sessions/default?node=slow-session")) as response:
        status, session = await answer(response)
    assert (status, session["id"], session["node"]) == (200, "default", "slow-session")
    async with control_plane.get(gateway.make_url("/api/v1/sessions?node=slow-list")) as response:
        status, listing = await answer(response)
    assert (status, listing["nodes"]) == (200, [{"name": "slow-list", "state": "up", "message": None}])
    for server in servers:
        server.close()


async def test_a_token_answer_other_than_201_is_502_not_passed_on(cluster, control_plane):
    reply = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"sessions": ['  # no length: cut by close
    server, url = await misbehaving_host(reply)
    gateway = await cluster.gateway(node=cluster.nodes(odd=url))
    path = "/api/v1/sessions/default/tokens?node=odd"
    async with control_plane.post(gateway.make_url(path), json={"role": "view"}) as response:
        assert await answer(response) == (
            502,
            {"error": {"code": "bad_gateway", "message": "node odd gave no valid answer"}},
        )
    server.close()


async def sent_in_pieces(server: TestServer, method: str, path: str, token: str, media: str, body: bytes) -> int:
    """The status of `method` `path` whose body comes in two pieces a fifth of a second apart, as a slow or
    distant client's (or the gateway relaying one) does."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: {media}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode() + body[:10])
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.write(body[10:])
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    return int(status_line.split()[1])


async def test_a_body_that_comes_in_pieces_is_read_whole_by_the_gateway_and_by_a_host(cluster):
    gateway = await cluster.gateway()
    session = json.dumps({"id": "vm-1", "source": SOURCE, "node": "gpu-host-1"}).encode()
    assert (
        await sent_in_pieces(gateway, "POST", "/api/v1/sessions", GATEWAY_TOKEN, "application/json", session) == 201
    ), "the gateway's own read"
    host = cluster.hosts["gpu-host-2"]
    change = json.dumps({"name": "Two"}).encode()
    assert (
        await sent_in_pieces(host, "PATCH", "/api/v1/sessions/default", OPERATOR_TOKEN, "application/json", change)
        == 200
    ), "a host's own read"
    peer = RTCPeerConnection()
    peer.addTransceiver("video", direction="recvonly")
    await peer.setLocalDescription(await peer.createOffer())
    offer = peer.localDescription.sdp.encode()
    try:
        assert (
            await sent_in_pieces(
                gateway, "POST", "/whep/default?node=gpu-host-3", GATEWAY_TOKEN, "application/sdp", offer
            )
            == 201
        ), "an offer the gateway relays as it comes, read whole by its host"
    finally:
        await peer.close()


def picture_width(jpeg: bytes) -> int:
    with av.open(io.BytesIO(jpeg)) as container:
        return next(container.decode(video=0)).width


async def test_a_thumbnail_of_an_id_on_two_hosts_needs_its_node_and_is_that_host_s(cluster, control_plane):
    gateway = await cluster.gateway()
    for node, source in (("gpu-host-1", "synthetic:320x240@30"), ("gpu-host-2", "synthetic:640x480@30")):
        body = {"id": "vm-5", "source": source, "node": node}
        async with control_plane.post(gateway.make_url("/api/v1/sessions"), json=body) as response:
            assert response.status == 201
        session = cluster.hosts[node].app[REGISTRY].get("vm-5")
        await wait_for(lambda session=session: session.capture.snapshot.thumbnail, what=f"a picture on {node}")
    path = "/api/v1/sessions/vm-5/thumbnail?size=640"
    async with control_plane.get(gateway.make_url(path)) as response:
        status, refused = await answer(response)
    assert (status, refused["error"]["message"]) == (
        409,
        "session 'vm-5' is on more than one node (gpu-host-1, gpu-host-2): name it with ?node=",
    )
    for node, width in (("gpu-host-1", 320), ("gpu-host-2", 640)):
        async with control_plane.get(gateway.make_url(f"{path}&node={node}")) as response:
            assert response.status == 200 and picture_width(await response.read()) == width, node
