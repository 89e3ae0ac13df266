"""Operator and viewer tokens: every way to get them wrong gets a clear 401/403, and secrets stay secret."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import OPERATOR_TOKEN, wait_for
from vgpustream.api.state import REGISTRY
from vgpustream.control.auth import MAX_TOKEN_LENGTH
from vgpustream.testing.receiver import WhepError, WhepReceiver, an_offer


async def issue(http, server: TestServer, session: str = "default", **body) -> dict:
    async with http.post(server.make_url(f"/api/v1/sessions/{session}/tokens"), json=body) as response:
        assert response.status == 201, await response.text()
        return await response.json()


async def whep_status(anonymous, server: TestServer, token: str | None, session: str = "default") -> int:
    receiver = WhepReceiver(str(server.make_url(f"/whep/{session}")), anonymous, token=token)
    try:
        await receiver.connect()
    except WhepError as refused:
        return refused.status
    finally:
        await receiver.close()
    return 201


async def test_operator_api_needs_the_operator_token(make_server, anonymous, http):
    server = await make_server(source="synthetic:320x240@30")
    url = server.make_url("/api/v1/sessions")
    async with anonymous.get(url) as response:
        assert response.status == 401
        assert (await response.json())["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"] == "Bearer", "RFC 9110: a 401 says how to authenticate"
    for header in ("Bearer wrong", "Bearer vgs_not-a-real-token"):
        async with anonymous.get(url, headers={"Authorization": header}) as response:
            assert response.status == 403, header
            assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"', header
    for header in ("Basic dXNlcjpwYXNz", "Bearer", "Bearer " + "x" * (MAX_TOKEN_LENGTH + 1)):
        async with anonymous.get(url, headers={"Authorization": header}) as response:
            assert response.status == 403, header
            assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_request"', header
    viewer_token = (await issue(http, server, role="control"))["token"]
    async with anonymous.get(url, headers={"Authorization": f"Bearer {viewer_token}"}) as response:
        assert response.status == 403, "a viewer token is not an operator token"
        assert response.headers["WWW-Authenticate"] == 'Bearer error="insufficient_scope"'
        assert response.headers["Server"] == "vgpustream", "no versions for an attacker to match"
    async with anonymous.get(url, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}) as response:
        assert response.status == 200
    async with anonymous.get(server.make_url("/api/v1/openapi.json")) as response:
        assert response.status == 200, "the API description is public"


async def test_viewer_tokens_missing_wrong_expired_revoked_reused_elsewhere(make_server, anonymous, http):
    server = await make_server(source="synthetic:320x240@30")
    async with http.post(server.make_url("/api/v1/sessions"), json={"id": "other", "source": "synthetic:320x240@5"}):
        pass
    assert await whep_status(anonymous, server, None) == 401
    assert await whep_status(anonymous, server, "vgs_not-a-real-token") == 403
    expiring = await issue(http, server, ttl_seconds=1)
    assert await whep_status(anonymous, server, expiring["token"]) == 201
    await asyncio.sleep(1.2)
    assert await whep_status(anonymous, server, expiring["token"]) == 403
    once = await issue(http, server, single_use=True)
    assert await whep_status(anonymous, server, once["token"]) == 201
    assert await whep_status(anonymous, server, once["token"]) == 403
    elsewhere = await issue(http, server, session="other")
    assert await whep_status(anonymous, server, elsewhere["token"]) == 403
    assert await whep_status(anonymous, server, elsewhere["token"], session="other") == 201
    revoked = await issue(http, server)
    async with http.delete(server.make_url(f"/api/v1/sessions/default/tokens/{revoked['id']}")) as response:
        assert response.status == 204
    assert await whep_status(anonymous, server, revoked["token"]) == 403
    async with http.get(server.make_url("/api/v1/sessions/default/tokens")) as response:
        listed = {t["id"]: t for t in (await response.json())["tokens"]}
    assert listed[revoked["id"]]["revoked"] and listed[once["id"]]["used"]
    assert all("token" not in t for t in listed.values()), "secrets are shown once, at issue time"


async def test_revoking_a_token_disconnects_its_viewers(make_server, anonymous, http):
    server = await make_server(source="synthetic:320x240@30")
    issued = await issue(http, server, role="control")
    receiver = WhepReceiver(issued["whep_url"], anonymous, token=issued["token"])
    await receiver.connect()
    await receiver.next_frame()
    session = server.app[REGISTRY].get("default")
    async with http.get(server.make_url("/api/v1/sessions/default/viewers")) as response:
        (viewer,) = (await response.json())["viewers"]
    assert viewer["role"] == "control" and viewer["token_id"] == issued["id"]
    async with http.delete(server.make_url(f"/api/v1/sessions/default/tokens/{issued['id']}")) as response:
        assert response.status == 204
    assert len(session.audience) == 0
    await receiver.close()


async def test_a_view_token_cannot_control(make_server, anonymous, http):
    server = await make_server(source="synthetic:320x240@30")
    issued = await issue(http, server, role="view")
    assert issued["console_url"].endswith(f"/?session=default#token={issued['token']}")
    receiver = WhepReceiver(issued["whep_url"], anonymous, token=issued["token"])
    await receiver.connect()
    await receiver.next_frame()
    await receiver.wait_channel_open()
    receiver.send_input({"type": "key", "code": "KeyA", "down": True})
    session = server.app[REGISTRY].get("default")
    for _ in range(50):
        if session.audience.stats.input_refused:
            break
        await asyncio.sleep(0.1)
    assert (session.audience.stats.input_refused, session.audience.stats.input_events) == (1, 0)
    assert session.capture.input_sink.keys_down == set()
    await receiver.close()


async def test_disconnect_a_viewer(make_server, viewers, http):
    server = await make_server(source="synthetic:320x240@30")
    receiver = await viewers(server)
    await receiver.next_frame()
    (viewer,) = server.app[REGISTRY].get("default").audience
    viewer_id = viewer.id
    async with http.delete(server.make_url(f"/api/v1/sessions/default/viewers/{viewer_id}")) as response:
        assert response.status == 204
    async with http.delete(server.make_url(f"/api/v1/sessions/default/viewers/{viewer_id}")) as response:
        assert response.status == 404


async def test_tokens_are_stored_hashed_and_never_logged(make_server, anonymous, http, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    server = await make_server(source="synthetic:320x240@30")
    issued = await issue(http, server)
    assert await whep_status(anonymous, server, issued["token"]) == 201
    assert await whep_status(anonymous, server, issued["token"] + "x") == 403
    database = b"".join(p.read_bytes() for p in (tmp_path / "state").iterdir())
    assert issued["token"].encode() not in database
    assert all(issued["token"] not in record.getMessage() for record in caplog.records)
    assert all(OPERATOR_TOKEN not in record.getMessage() for record in caplog.records)


async def test_token_requests_are_rate_limited(make_server, anonymous, http):
    server = await make_server(source="synthetic:320x240@30", rate_limit=1.0, rate_burst=3)
    token = (await issue(http, server))["token"]
    statuses = []
    for _ in range(5):
        async with anonymous.post(
            server.make_url("/whep/default"),
            data="not sdp",
            headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"},
        ) as response:
            statuses.append(response.status)
            retry_after = response.headers.get("Retry-After")
    assert statuses[:3] == [400, 400, 400] and statuses[3:] == [429, 429]
    assert retry_after is not None and int(retry_after) >= 1
    async with http.get(server.make_url("/healthz")) as response:
        assert response.status == 200


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"role": "admin"}, 400, "role"),
        ({"ttl_seconds": 0}, 400, "ttl_seconds"),
        ({"ttl_seconds": 10**9}, 400, "ttl_seconds"),
        ({"single_use": "yes"}, 400, "single_use"),
        ({"colour": "red"}, 400, "unknown field"),
    ],
)
async def test_bad_token_requests(make_server, http, body, status, fragment):
    server = await make_server(source="synthetic:320x240@30")
    async with http.post(server.make_url("/api/v1/sessions/default/tokens"), json=body) as response:
        assert response.status == status
        assert fragment in (await response.json())["error"]["message"]
    async with http.post(server.make_url("/api/v1/sessions/nope/tokens"), json={}) as response:
        assert response.status == 404


async def test_a_viewer_of_the_operator_token_is_listed_as_operator(make_server, http, viewers):
    server = await make_server(source="synthetic:320x240@30")
    receiver = await viewers(server)  # with the operator token
    await receiver.next_frame()
    async with http.get(server.make_url("/api/v1/sessions/default/viewers")) as response:
        assert response.status == 200, await response.text()
        (viewer,) = (await response.json())["viewers"]
    assert viewer["role"] == "operator" and viewer["token_id"] is None


async def connected_with(anonymous, issued: dict) -> WhepReceiver:
    receiver = WhepReceiver(issued["whep_url"], anonymous, token=issued["token"])
    await receiver.connect()
    await receiver.wait_channel_open()
    return receiver


def told(receiver: WhepReceiver, kind: str) -> list[dict]:
    return [message for message in receiver.messages if message.get("type") == kind]


async def test_a_viewer_is_disconnected_when_its_token_expires(make_server, anonymous, http):
    server = await make_server(source="synthetic:320x240@30")
    session = server.app[REGISTRY].get("default")
    # 6 s: time enough to connect and type on a slow machine before the token expires
    receiver = await connected_with(anonymous, await issue(http, server, role="control", ttl_seconds=6))
    receiver.send_input({"type": "key", "code": "KeyA", "down": True})
    await wait_for(lambda: session.audience.stats.input_events == 1, what="the key while the token is valid")
    await wait_for(lambda: len(session.audience) == 0, timeout=20, what="the viewer disconnected at expiry")
    assert [m["reason"] for m in told(receiver, "disconnect")] == ["token_expired"], "and told why"
    assert session.capture.input_sink.keys_down == set(), "what it held is released"
    await receiver.close()


async def test_with_on_token_expiry_view_an_expired_viewer_only_watches(make_server, anonymous, http):
    server = await make_server(source="synthetic:320x240@30", on_token_expiry="view")
    session = server.app[REGISTRY].get("default")
    sink = session.capture.input_sink
    receiver = await connected_with(anonymous, await issue(http, server, role="control", ttl_seconds=6))
    receiver.send_input({"type": "key", "code": "KeyA", "down": True})
    await wait_for(lambda: "KeyA" in sink.keys_down, what="the key while the token is valid")
    await wait_for(lambda: told(receiver, "expired"), timeout=20, what="the viewer told its time is up")
    assert sink.keys_down == set(), "the keys it held are released when its control ends"
    receiver.send_input({"type": "key", "code": "KeyB", "down": True})
    await wait_for(lambda: session.audience.stats.input_refused == 1, what="input after expiry refused")
    assert session.audience.stats.input_events == 1
    (viewer,) = session.audience
    assert (viewer.role, viewer.clipboard) == ("view", "none")
    assert (await receiver.next_frame()).picture.width == 320, "it still watches"
    await receiver.close()


async def offer_status(client, server, token: str | None = None) -> tuple[int, str]:
    """POST a real offer that is never connected (its ICE never completes); the status and the body."""
    headers = {"Content-Type": "application/sdp"} | ({"Authorization": f"Bearer {token}"} if token else {})
    async with client.post(server.make_url("/whep/default"), data=await an_offer(), headers=headers) as response:
        return response.status, await response.text()


async def test_a_token_takes_at_most_its_seats_and_the_operator_keeps_one(make_server, anonymous, http):
    # the offers never connect: they keep their seats for the whole test however slowly it runs
    server = await make_server(source="synthetic:320x240@30", max_viewers=4, viewer_connect_timeout=300.0)
    session = server.app[REGISTRY].get("default")
    pair = await issue(http, server, max_viewers=2)
    assert pair["max_viewers"] == 2
    assert [(await offer_status(anonymous, server, pair["token"]))[0] for _ in range(3)] == [201, 201, 503]
    crowd = await issue(http, server)
    assert crowd["max_viewers"] == 4, "--token-max-viewers by default"
    assert (await offer_status(anonymous, server, crowd["token"]))[0] == 201
    status, body = await offer_status(anonymous, server, crowd["token"])
    assert status == 503 and "operator" in body, "three people's viewers: the last seat is the operator's"
    assert (await offer_status(http, server))[0] == 201
    assert len(session.audience) == 4


async def test_without_tokens_no_seat_is_kept_for_an_operator(make_server, anonymous):
    """--insecure-no-auth: there is no operator token to keep a seat for; every seat is the developer's."""
    server = await make_server(
        source="synthetic:320x240@30", max_viewers=2, insecure_no_auth=True, viewer_connect_timeout=300.0
    )
    statuses = [(await offer_status(anonymous, server))[0] for _ in range(3)]
    assert statuses == [201, 201, 503], statuses


async def test_seats_of_offers_that_never_connect_are_freed(make_server, anonymous, http):
    server = await make_server(source="synthetic:320x240@30", viewer_connect_timeout=1.0)
    session = server.app[REGISTRY].get("default")
    issued = await issue(http, server, max_viewers=1)
    assert (await offer_status(anonymous, server, issued["token"]))[0] == 201
    await wait_for(lambda: len(session.audience) == 0, what="the unconnected offer's seat freed")
    assert (await offer_status(anonymous, server, issued["token"]))[0] == 201, "the token's one seat is free again"


async def test_tokens_are_listed_a_page_at_a_time(make_server, http):
    server = await make_server(source="synthetic:320x240@30")
    issued = [(await issue(http, server))["id"] for _ in range(5)]
    listed, url, pages = [], server.make_url("/api/v1/sessions/default/tokens?limit=2"), 0
    while url is not None:
        async with http.get(url) as response:
            assert response.status == 200, await response.text()
            page = await response.json()
        assert len(page["tokens"]) <= 2
        listed += [token["id"] for token in page["tokens"]]
        url = page["next"] and server.make_url(page["next"])
        pages += 1
    assert (listed, pages) == (issued, 3), "in the order they were issued, each once"
    for query in ("limit=0", "limit=1001", "after=-1", "page=2"):
        async with http.get(server.make_url(f"/api/v1/sessions/default/tokens?{query}")) as response:
            assert response.status == 400, query


async def test_expired_and_revoked_tokens_are_purged_after_their_retention(make_server, http):
    retention = 0.00002  # days: 1.7 s
    server = await make_server(source="synthetic:320x240@30", token_retention_days=retention)
    expiring = await issue(http, server, ttl_seconds=1)
    revoked = await issue(http, server)
    live = await issue(http, server)
    async with http.delete(server.make_url(f"/api/v1/sessions/default/tokens/{revoked['id']}")) as response:
        assert response.status == 204
    async with http.get(server.make_url("/api/v1/sessions/default/tokens")) as response:
        listed = [token["id"] for token in (await response.json())["tokens"]]
    assert listed == [expiring["id"], revoked["id"], live["id"]], "kept through their retention"
    await asyncio.sleep(1 + retention * 86_400 + 0.5)
    restarted = await make_server(source="synthetic:320x240@30", token_retention_days=retention)  # same state
    async with http.get(restarted.make_url("/api/v1/sessions/default/tokens")) as response:
        listed = [token["id"] for token in (await response.json())["tokens"]]
    assert listed == [live["id"]], "purged at start-up (and hourly)"
