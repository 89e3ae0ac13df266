"""Console links signed by the gateway (Ed25519) and checked offline by the hosts: no row per token on a host,
revocation through the gateway, single use on the host, forged or misdirected tokens refused, two keys valid
during a rotation."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from joserfc.jwk import OKPKey

from tests.conftest import OPERATOR_TOKEN, wait_for
from tests.conftest import test_settings as host_settings
from tests.gateway_cluster import CONTROL_PLANE, GATEWAY_TOKEN, SOURCE
from vgpustream.api.app import create_app
from vgpustream.api.state import REGISTRY, STORE
from vgpustream.control.signedtokens import SignedToken, TokenSigner
from vgpustream.errors import VgpuStreamError
from vgpustream.gateway.app import create_gateway
from vgpustream.gateway.settings import GatewaySettings
from vgpustream.testing.wsreceiver import WebSocketReceiver, WebSocketRefused

NODES = ("gpu-host-1", "gpu-host-2")
REVOKED_WITHIN = 5.0
"""How soon a viewer of a token revoked at the gateway is cut (issue #27)."""


def key_files(directory: Path, name: str) -> tuple[Path, Path]:
    """A new Ed25519 key pair as PEM files: the private one (a gateway's), the public one (for the hosts)."""
    key = OKPKey.generate_key("Ed25519")
    private, public = directory / f"{name}.pem", directory / f"{name}.pub.pem"
    private.write_bytes(key.as_pem(private=True))
    public.write_bytes(key.as_pem(private=False))
    return private, public


class SignedCluster:
    def __init__(self, tmp_path: Path, aiohttp_server) -> None:
        self.tmp_path = tmp_path
        self.start = aiohttp_server
        self.hosts: dict[str, TestServer] = {}
        self.urls: dict[str, str] = {}
        """Each host's URL, which stays its own while it is down."""
        self.old, old_public = key_files(tmp_path, "old")
        self.new, new_public = key_files(tmp_path, "new")
        self.trusted = tmp_path / "gateway-keys.pem"  # both public keys: a rotation under way
        self.trusted.write_bytes(old_public.read_bytes() + new_public.read_bytes())

    async def add_hosts(self) -> None:
        for name in NODES:
            await self.add_host(name)

    async def add_host(self, name: str, port: int | None = None) -> TestServer:
        """Host `name` (started again, with its state, where it ran on `port`)."""
        settings = host_settings(self.tmp_path / name, source=SOURCE, node_name=name, gateway_key_file=self.trusted)
        host = self.hosts[name] = await self.start(create_app(settings), port=port)
        self.urls[name] = str(host.make_url(""))
        return host

    async def gateway(self, key: Path) -> TestServer:
        nodes = tuple(f"{name}={url}" for name, url in self.urls.items())
        settings = GatewaySettings(
            node=nodes, operator_token=GATEWAY_TOKEN, host_token=OPERATOR_TOKEN, signing_key_file=key
        )
        return await self.start(create_gateway(settings))


@pytest.fixture
async def signed(tmp_path, aiohttp_server) -> SignedCluster:
    cluster = SignedCluster(tmp_path, aiohttp_server)
    await cluster.add_hosts()
    return cluster


@pytest.fixture
async def control_plane():
    async with aiohttp.ClientSession(headers=CONTROL_PLANE) as session:
        yield session


async def mint(control_plane, gateway: TestServer, node: str, **body) -> dict:
    path = f"/api/v1/sessions/default/tokens?node={node}"
    async with control_plane.post(gateway.make_url(path), json=body) as response:
        assert response.status == 201, await response.text()
        return await response.json()


async def whep_refusal(anonymous, host: TestServer, token: str) -> tuple[int, str]:
    """What a host says to a WHEP offer with `token` (it checks the token before it reads the offer)."""
    headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"}
    async with anonymous.post(host.make_url("/whep/default"), data="v=0\r\n", headers=headers) as response:
        return response.status, (await response.json())["error"]["message"]


async def test_a_signed_link_plays_through_the_gateway_and_leaves_no_row_on_its_host(
    signed, control_plane, anonymous, http
):
    gateway = await signed.gateway(signed.old)
    issued = await mint(control_plane, gateway, "gpu-host-2", role="control", transport="websocket")
    assert issued["token"].count(".") == 2 and issued["role"] == "control" and issued["max_viewers"] == 4
    assert issued["console_url"].endswith(
        f"/?session=default&transport=websocket&node=gpu-host-2#token={issued['token']}"
    )
    host = signed.hosts["gpu-host-2"]
    viewer = WebSocketReceiver(issued["websocket_url"], anonymous, issued["token"])
    await viewer.connect()
    await viewer.next_frame()
    (seat,) = host.app[REGISTRY].get("default").audience
    assert (seat.role, seat.token_id) == ("control", issued["id"])
    assert host.app[STORE].tokens("default") == [], "the host keeps no row of a signed token"
    assert host.app[STORE].signed_token(issued["id"]) == (None, None)
    await viewer.close()
    assert await whep_refusal(anonymous, signed.hosts["gpu-host-1"], issued["token"]) == (
        403,
        "the token is for another node",
    )
    async with http.post(host.make_url("/api/v1/sessions/default/tokens"), json={}) as response:
        own = await response.json()  # the host's own tokens keep working beside the gateway's
    direct = WebSocketReceiver(str(host.make_url("/ws/default")), anonymous, own["token"])
    await direct.connect()
    await direct.close()


async def test_revoking_a_signed_link_at_the_gateway_cuts_its_viewer(signed, control_plane, anonymous):
    gateway = await signed.gateway(signed.old)
    issued = await mint(control_plane, gateway, "gpu-host-1", role="view")
    viewer = WebSocketReceiver(issued["websocket_url"], anonymous, issued["token"])
    await viewer.connect()
    await viewer.next_frame()
    other_gateway = await signed.gateway(signed.old)  # any replica revokes: the host keeps the verdict
    path = f"/api/v1/sessions/default/tokens/{issued['id']}?node=gpu-host-1"
    async with control_plane.delete(other_gateway.make_url(path)) as response:
        assert response.status == 204
    code, _ = await asyncio.wait_for(viewer.closed, REVOKED_WITHIN)
    assert code == 4403
    again = WebSocketReceiver(issued["websocket_url"], anonymous, issued["token"])
    with pytest.raises(WebSocketRefused) as refused:
        await again.connect()
    assert (refused.value.code, refused.value.reason) == (4403, "the token was revoked")
    path = "/api/v1/sessions/default/tokens/not-a-token-id?node=gpu-host-1"
    async with control_plane.delete(gateway.make_url(path)) as response:
        assert response.status == 404, "only a signed token's id is taken"


async def test_a_single_use_signed_link_plays_once(signed, control_plane, anonymous):
    gateway = await signed.gateway(signed.old)
    issued = await mint(control_plane, gateway, "gpu-host-1", single_use=True)
    viewer = WebSocketReceiver(issued["websocket_url"], anonymous, issued["token"])
    await viewer.connect()
    await viewer.close()
    again = WebSocketReceiver(issued["websocket_url"], anonymous, issued["token"])
    with pytest.raises(WebSocketRefused) as refused:
        await again.connect()
    assert (refused.value.code, refused.value.reason) == (4403, "the single-use token was used already")


def payload(token: str) -> dict:
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def with_payload(token: str, claims: dict) -> str:
    header, _, signature = token.split(".")
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{body}.{signature}"


async def test_forged_altered_expired_and_misdirected_tokens_are_refused(signed, control_plane, anonymous, tmp_path):
    gateway = await signed.gateway(signed.old)
    issued = await mint(control_plane, gateway, "gpu-host-1", role="view")
    host = signed.hosts["gpu-host-1"]
    stranger, _ = key_files(tmp_path, "stranger")
    now = time.time()

    def signed_by(key: Path, **changes) -> str:
        fields = {"id": "0123456789abcdef", "session": "default", "node": "gpu-host-1", "role": "control",
                  "issued_at": now, "expires_at": now + 600, "single_use": False, "clipboard": None,
                  "max_viewers": None} | changes  # fmt: skip
        return TokenSigner(key).sign(SignedToken(**fields))

    unsigned = (
        ".".join(
            base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()
            for part in ({"alg": "none"}, payload(issued["token"]))
        )
        + "."
    )
    untrusted = "the token is not signed by a gateway this host trusts"
    altered = with_payload(issued["token"], payload(issued["token"]) | {"role": "control"})
    not_granted = "the token's role, lifetime, clipboard, viewers or microphone are not what this host grants"
    cases = {
        "a stranger's key": (signed_by(stranger), untrusted),
        "altered: view made control": (altered, untrusted),
        "no signature (alg none)": (unsigned, untrusted),
        "expired": (signed_by(signed.old, issued_at=now - 700, expires_at=now - 100), "the token has expired"),
        "for another node": (signed_by(signed.old, node="gpu-host-2"), "the token is for another node"),
        "for another session": (signed_by(signed.old, session="vm-1"), "the token is for another session"),
        "longer than the host grants": (signed_by(signed.old, expires_at=now + 10 * 86_400), not_granted),
        "a role no token has": (signed_by(signed.old, role="operator"), not_granted),
        "a microphone access no token has": (signed_by(signed.old, microphone="shout"), not_granted),
    }  # fmt: skip
    for what, (token, message) in cases.items():
        assert await whep_refusal(anonymous, host, token) == (403, message), what
    assert host.app[STORE].tokens("default") == []


async def test_two_keys_are_valid_during_a_rotation(signed, control_plane, anonymous):
    before = await signed.gateway(signed.old)
    watching = await mint(control_plane, before, "gpu-host-1", role="view")
    viewer = WebSocketReceiver(watching["websocket_url"], anonymous, watching["token"])
    await viewer.connect()
    after = await signed.gateway(signed.new)  # the gateways get the new private key
    joining = await mint(control_plane, after, "gpu-host-1", role="view")
    assert payload(joining["token"])["jti"] != payload(watching["token"])["jti"]
    newcomer = WebSocketReceiver(joining["websocket_url"], anonymous, joining["token"])
    await newcomer.connect()
    for receiver in (viewer, newcomer):
        await receiver.next_frame()
    assert len(signed.hosts["gpu-host-1"].app[REGISTRY].get("default").audience) == 2
    for receiver in (viewer, newcomer):
        await receiver.close()


def test_key_files_that_hold_no_usable_key_are_refused(tmp_path):
    private, public = key_files(tmp_path, "gateway")
    empty = tmp_path / "empty.pem"
    empty.write_text("no key here\n")
    with pytest.raises(VgpuStreamError, match="the signing key file must hold one Ed25519 private key"):
        TokenSigner(public)
    with pytest.raises(VgpuStreamError, match="the gateway key file holds no PEM key"):
        create_app(host_settings(tmp_path / "state", gateway_key_file=empty))
    with pytest.raises(VgpuStreamError, match="cannot read the signing key file"):
        TokenSigner(tmp_path / "missing.pem")
    assert TokenSigner(private)


async def test_a_revocation_for_a_host_that_is_down_is_refused_with_retry_after_until_its_host_has_it(
    signed, control_plane, anonymous
):
    """The gateway keeps nothing, so it never says a revocation is done before the token's host has it: 503 with
    Retry-After (the control plane tries again), never a 204 from another host with a session of the same id."""
    seen_both = await signed.gateway(signed.old)  # has listed both hosts' 'default'
    issued = await mint(control_plane, seen_both, "gpu-host-1", role="view")
    down = signed.hosts["gpu-host-1"]
    port = down.port
    await down.close()
    fresh = await signed.gateway(signed.old)  # a replica that never heard from gpu-host-1
    revoke = f"/api/v1/sessions/default/tokens/{issued['id']}"
    expected = {
        (seen_both, revoke): (
            409,
            "session 'default' is on more than one node (gpu-host-2, gpu-host-1): name it with ?node=",
        ),
        (fresh, revoke): (
            503,
            "node gpu-host-2 has session 'default', and gpu-host-1 (not answering) may have it too: name it with "
            "?node=, or try again",
        ),
        (seen_both, f"{revoke}?node=gpu-host-1"): (503, "node gpu-host-1 does not answer"),
        (fresh, f"{revoke}?node=gpu-host-1"): (503, "node gpu-host-1 does not answer"),
    }
    for (gateway, path), (status, message) in expected.items():
        async with control_plane.delete(gateway.make_url(path)) as response:
            assert (response.status, (await response.json())["error"]["message"]) == (status, message), path
            if status == 503:
                assert response.headers["Retry-After"] == "5"
    assert signed.hosts["gpu-host-2"].app[STORE].signed_token(issued["id"]) == (None, None), "no other host's row"

    host = await signed.add_host("gpu-host-1", port=port)  # back, with its state
    for attempt in range(2):  # the retry, and one more (its answer may have been lost): both done
        async with control_plane.delete(fresh.make_url(f"{revoke}?node=gpu-host-1")) as response:
            assert response.status == 204, attempt
    assert await whep_refusal(anonymous, host, issued["token"]) == (403, "the token was revoked")


async def test_a_signed_link_carries_its_microphone_access(signed, control_plane, anonymous):
    gateway = await signed.gateway(signed.old)
    host = signed.hosts["gpu-host-2"]
    speaking = await mint(control_plane, gateway, "gpu-host-2", role="control", microphone="use")
    silent = await mint(control_plane, gateway, "gpu-host-2", role="control")
    assert (speaking["microphone"], silent["microphone"]) == ("use", "none")
    for issued in (speaking, silent):
        viewer = WebSocketReceiver(issued["websocket_url"], anonymous, issued["token"])
        await viewer.connect()
        (seat,) = host.app[REGISTRY].get("default").audience
        assert seat.may_speak is (issued is speaking)
        await viewer.close()
        await wait_for(lambda: len(host.app[REGISTRY].get("default").audience) == 0, what="the seat given back")
    path = "/api/v1/sessions/default/tokens?node=gpu-host-2"
    async with control_plane.post(gateway.make_url(path), json={"role": "view", "microphone": "use"}) as response:
        assert response.status == 400, "a view token never speaks, signed or not"
