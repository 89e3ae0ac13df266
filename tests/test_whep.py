"""WHEP signalling as the draft specifies it, and bad input answered with clear 4xx errors."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aioice.mdns import MDnsProtocol

from tests.conftest import wait_for
from vgpustream.api.state import REGISTRY
from vgpustream.testing.receiver import WhepError, WhepReceiver, an_offer

MDNS_TIMEOUT_S = 1.0
"""How long aioice waits for an mDNS answer."""


async def test_post_answers_201_with_location_etag_and_ice_servers(make_server, http, anonymous):
    server = await make_server(
        source="synthetic:320x240@30",
        ice_server=("stun:stun.example.net:3478", "turn:turn.example.net"),
        turn_username="user",
        turn_credential="secret",
        cors_origin=("https://player.example",),
    )
    offer = await an_offer(data_channel=False)
    async with http.post(
        server.make_url("/whep/default"), data=offer, headers={"Content-Type": "application/sdp"}
    ) as response:
        assert response.status == 201
        assert response.content_type == "application/sdp"
        answer = await response.text()
        location, etag = response.headers["Location"], response.headers["ETag"]
        links = response.headers.getall("Link")
    assert answer.startswith("v=0") and "a=candidate:" in answer and "H264/90000" in answer
    assert "VP8" not in answer, "only the shared encoder's codec may be negotiated"
    assert "a=end-of-candidates" in answer, "the server does not trickle: all candidates are in the answer"
    assert location.startswith("/whep/default/") and etag.startswith('"')
    assert links == [
        '<stun:stun.example.net:3478>; rel="ice-server"',
        '<turn:turn.example.net>; rel="ice-server"; username="user"; credential="secret"; credential-type="password"',
    ]
    # OPTIONS on the endpoint: CORS and Accept-Post
    async with http.options(server.make_url("/whep/default"), headers={"Origin": "https://player.example"}) as response:
        assert response.status == 204
        assert response.headers["Accept-Post"] == "application/sdp"
        assert response.headers["Access-Control-Allow-Origin"] == "https://player.example"
        assert "Location" in response.headers["Access-Control-Expose-Headers"]
        assert response.headers.getall("Link") == links, "a valid token (here the operator's) gets the credential"
    async with anonymous.options(server.make_url("/whep/default")) as response:
        assert response.headers.getall("Link") == [link.partition("; username=")[0] for link in links], "no token"
    # PATCH with a trickled candidate, then with an ICE restart (unsupported: 422), wrong If-Match: 412
    fragment = "a=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n"
    trickle = {"Content-Type": "application/trickle-ice-sdpfrag"}
    async with http.patch(server.make_url(location), data=fragment, headers={**trickle, "If-Match": etag}) as response:
        assert response.status == 204
    async with http.patch(
        server.make_url(location), data="a=ice-ufrag:zzzz\r\na=ice-pwd:" + "p" * 22 + "\r\n", headers=trickle
    ) as response:
        assert response.status == 422
        assert (await response.json())["error"]["code"] == "ice_restart_unsupported"
    async with http.patch(server.make_url(location), data=fragment, headers={**trickle, "If-Match": '"x"'}) as response:
        assert response.status == 412
    for bad in ("a=candidate:garbage\r\n", "a=candidate:1 1 udp x 1.2.3.4 9 typ host\r\n", "v=0\r\n"):
        async with http.patch(server.make_url(location), data=bad, headers=trickle) as response:
            assert response.status == 400, bad
    async with http.delete(server.make_url(location)) as response:
        assert response.status == 200
    async with http.delete(server.make_url(location)) as response:
        assert response.status == 200, "the resource existed: a repeated DELETE (within the grace period) is no error"


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        ("this is not SDP", "application/sdp", 400, "invalid_offer"),
        ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", "application/sdp", 400, "invalid_offer"),
        ("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n", "application/sdp", 400, "invalid_offer"),
        ('{"sdp": "v=0"}', "application/json", 415, "unsupported_media_type"),
        ("v=0\r\n" + "a=x\r\n" * 20_000, "application/sdp", 413, "payload_too_large"),
        (b"v=0\xff\xfe", "application/sdp", 400, "bad_request"),
    ],
    ids=["garbage", "no-media", "vp8-only", "json", "oversized", "not-utf8"],
)
async def test_bad_offers_get_a_clear_4xx_and_the_server_keeps_serving(
    make_server, http, viewers, body, content_type, status, code
):
    server = await make_server(source="synthetic:320x240@30")
    async with http.post(server.make_url("/whep/default"), data=body, headers={"Content-Type": content_type}) as r:
        assert r.status == status
        error = (await r.json())["error"]
        assert error["code"] == code and error["message"]
    receiver = await viewers(server)
    assert (await receiver.next_frame()).picture.width == 320


async def test_trickled_mdns_candidates_are_answered_at_once(make_server, http, monkeypatch):
    async def unanswered(protocol: MDnsProtocol, hostname: str, timeout: float | None = 1.0) -> str | None:
        await asyncio.sleep(MDNS_TIMEOUT_S)
        return None

    # a query nobody answers, as on a networked host (in the tests' loopback-only namespace aioice cannot
    # even join the mDNS group, and gives up at once)
    monkeypatch.setattr(MDnsProtocol, "resolve", unanswered)
    server = await make_server(source="synthetic:320x240@30")
    # a trickling player's offer: its candidates are still to come
    offer = (await an_offer(data_channel=False)).replace("a=end-of-candidates\r\n", "")
    sdp = {"Content-Type": "application/sdp"}
    async with http.post(server.make_url("/whep/default"), data=offer, headers=sdp) as response:
        location = response.headers["Location"]
    trickle = {"Content-Type": "application/trickle-ice-sdpfrag"}
    loop = asyncio.get_running_loop()
    for n in range(3):
        # as Chromium trickles them: host addresses hidden behind mDNS names nobody here resolves
        fragment = "a=mid:0\r\n" + "".join(
            f"a=candidate:{n}{k} 1 udp 2122260223 {uuid.uuid4()}.local {50000 + k} typ host\r\n" for k in range(2)
        )
        started = loop.time()
        async with http.patch(server.make_url(location), data=fragment, headers=trickle) as response:
            assert response.status == 204
        assert loop.time() - started < 0.1, "the answer must not wait on mDNS resolution"
    async with http.delete(server.make_url(location)) as response:
        assert response.status == 200


async def test_delete_after_the_peer_closed_is_200(make_server, http):
    """A player that closes its peer connection first, then DELETEs its resource (as whip-whep does)."""
    server = await make_server(source="synthetic:320x240@30")
    audience = server.app[REGISTRY].get("default").audience
    receiver = WhepReceiver(str(server.make_url("/whep/default")), http)
    await receiver.connect()
    await receiver.next_frame()
    await receiver.pc.close()
    async with asyncio.timeout(10):
        while len(audience):
            await asyncio.sleep(0.05)  # the server sees the peer leave
    async with http.delete(receiver.location) as response:
        assert response.status == 200
    async with http.delete(server.make_url("/whep/default/never-issued")) as response:
        assert response.status == 404


async def test_unknown_session_and_viewer_are_404(make_server, http):
    server = await make_server(source="synthetic:320x240@30")
    offer = await an_offer(data_channel=False)
    sdp = {"Content-Type": "application/sdp"}
    async with http.post(server.make_url("/whep/nope"), data=offer, headers=sdp) as response:
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "not_found"
    async with http.delete(server.make_url("/whep/default/nobody")) as response:
        assert response.status == 404
    async with http.get(server.make_url("/api/v1/sessions/nope")) as response:
        assert response.status == 404


async def test_full_session_answers_503_with_retry_after(make_server, viewers):
    server = await make_server(source="synthetic:320x240@30", max_viewers=1)
    await viewers(server)
    with pytest.raises(WhepError) as refused:
        await viewers(server)
    assert refused.value.status == 503
    assert "maximum" in refused.value.body


async def test_sessions_api(make_server, http):
    server = await make_server(source="synthetic:320x240@30")
    url = server.make_url("/api/v1/sessions")
    async with http.post(url, json={"id": "second", "source": "synthetic:640x360@15?still=1"}) as response:
        assert response.status == 201
        created = await response.json()
    assert created["planes"]["primary"] == {
        "fourcc": "XR24",
        "fourcc_code": 0x34325258,
        "modifier": 0,
        "width": 640,
        "height": 360,
        "stride": 2560,
        "size": 2560 * 360,
    }
    captured = [server.app[REGISTRY].get(name).capture.stats for name in ("default", "second")]
    await wait_for(lambda: all(stats.frames_captured for stats in captured), what="both sources captured")
    await asyncio.sleep(0.3)  # time for a still source to be captured again, which would be wrong
    async with http.get(url) as response:
        listed = {s["id"]: s for s in (await response.json())["sessions"]}
    assert set(listed) == {"default", "second"}
    assert listed["default"]["stats"]["frames_captured"] > 0
    assert listed["second"]["stats"]["frames_captured"] == 1, "a still source is captured once"
    for body, status in [
        ({"id": "second", "source": "synthetic:"}, 409),
        ({"id": "Bad Id!", "source": "synthetic:"}, 400),
        ({"id": "x", "source": "nope:1"}, 400),
        ({"id": "x", "source": "synthetic:99999x1"}, 400),
        ({"id": "x", "source": "synthetic:", "extra": 1}, 400),
        ({"id": "x"}, 400),
        ([1, 2], 400),
    ]:
        async with http.post(url, json=body) as response:
            assert response.status == status, body
            assert (await response.json())["error"]["message"]
    async with http.post(url, data="{not json", headers={"Content-Type": "application/json"}) as response:
        assert response.status == 400
    async with http.delete(server.make_url("/api/v1/sessions/second")) as response:
        assert response.status == 204
    async with http.get(server.make_url("/api/v1/sessions/second")) as response:
        assert response.status == 404
